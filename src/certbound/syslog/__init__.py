"""The System Log: event types and schema, the recorder, queries, tamper evidence."""
