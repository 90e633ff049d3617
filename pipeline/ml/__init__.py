"""Formula models (detector, rectifier, recognizer), their training data and training scripts.

Pure PyTorch/OpenCV code with no Django import, so it runs in Celery workers, management
commands, benchmarks and training scripts alike. CPU first; CUDA is used when present.
"""
