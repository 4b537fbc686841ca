"""The Batch API's core: input validation, result line formats, and the durable runner."""
