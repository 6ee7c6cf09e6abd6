"""The FastAPI inference app: predictions, SHAP explanations, model reloads, inference logs."""
