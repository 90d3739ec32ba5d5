"""X.509: PEM/DER intake, certificate facts, the trust store and path validation."""
