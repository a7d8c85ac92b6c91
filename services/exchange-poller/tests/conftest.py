"""exchange-poller test fixtures."""
