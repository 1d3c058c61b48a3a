import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, trainhub, trainhub.trainers, trainhub.models, trainhub.logging; "
        "heavy = [m for m in ('mlflow', 'tensorboard', 'transformers', 'faiss', 'annoy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
