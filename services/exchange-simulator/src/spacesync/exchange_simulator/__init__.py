"""EWS test double for Spacesync: see the service README."""
