"""Using a trained detector: ``io`` (reading files and base64 under the serving rules), ``pyfunc``
(the MLflow model and how it is logged), ``predict`` (files and folders, Keras or ONNX) and
``export`` (SavedModel, ONNX). Import the module you need: this package imports none of them, so
that reading images does not load MLflow's model code or the exporters."""
