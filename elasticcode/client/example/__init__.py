"""Ready-made references to the quickstart's sockets (the manual's `pyfi.client.example`)."""
