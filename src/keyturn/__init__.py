"""keyturn: self-hosted privileged-credential rotation for network devices."""
