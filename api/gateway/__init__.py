"""The hot path: inference endpoints proxied to local model servers and peers (raw ASGI)."""
