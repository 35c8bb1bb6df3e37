"""Using a trained detector: ``io`` (reading files and base64 under the serving rules), ``settings``
(a logged detector's settings with their defaults), ``rows`` (read -> check -> decode -> score, for
whole images and, with ``face_rows``, for face crops), ``members`` (the Keras members of a logged
detector), ``pyfunc`` (the MLflow model; ``logged``: what ``log_detector`` writes), ``predict``
(files and folders, Keras or ONNX) and ``export`` (SavedModel, ONNX). Import the module you need:
this package imports none of them, so that reading images does not load MLflow's model code or
the exporters."""
