"""Usage accounting: the ledger of billed tokens per project, model and tier."""
