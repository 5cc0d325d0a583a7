"""The multi-raft host: many Raft groups over one transport and one engine."""
