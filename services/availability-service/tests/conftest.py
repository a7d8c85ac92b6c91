"""availability-service test fixtures."""
