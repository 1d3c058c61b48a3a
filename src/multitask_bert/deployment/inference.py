"""``multitask_bert.deployment.inference``: reload a saved model and predict (unlike upstream's
``InferenceHandler``, the saved weights are loaded)."""

from trainhub.text.predict import Predictor, load_predictor

InferenceHandler = Predictor  # upstream name

__all__ = ["InferenceHandler", "Predictor", "load_predictor"]
