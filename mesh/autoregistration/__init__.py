"""WorkloadEntry auto-registration (Go: pilot/pkg/autoregistration); see ``controller``."""
