"""The `stage` command's exit codes (README: Exit codes)."""

EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the run could not go on or not report (bad config, unreadable catalog, folder locked, crash)
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_PARTIAL = 3  # the run finished, but some rows failed or were rejected
EXIT_STOPPED = 4  # the run was stopped (signal or cancellation); its report lists the SKUs not done
