"""The orchestrator's ingestion API: routes, streaming multipart, archive sniffing, names, and
the service (store, NATS link, outbox relay) they share. The contract itself lives in
``sparkstack_common.ingestion``."""
