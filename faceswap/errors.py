"""The one exception type users see: the CLI prints it as a single `Error: ...` line."""


class FaceswapError(Exception):
    """A failure caused by the user's input or environment (bad file, missing model, ...).

    Its message must make sense on its own, on one line, without a traceback.
    """
