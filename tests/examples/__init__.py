"""Examples of bringing your own model and trainer to privaudit (`privaudit.usermodel`), each run by
tests/test_user_models.py. Each module defines `train(texts, labels, seed)` (privaudit calls it for every
shadow model), `load_model(path)` (privaudit calls it for the target) and `save(model, path)` (yours)."""
