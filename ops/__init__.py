"""Run operations: catalogs, the per-product runner, publishing, the ledger, locks and reports."""
