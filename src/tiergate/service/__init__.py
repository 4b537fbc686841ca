"""The request road, as plain async functions shared by the HTTP routers and the batch runner."""
