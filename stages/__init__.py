"""Pure image steps: arrays and small typed values in, arrays and values out.

No files, locks or Prefect here; `stages.pipeline` holds the order of the steps.
"""
