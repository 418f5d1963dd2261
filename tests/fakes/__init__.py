"""Fake HTTP services on real sockets at 127.0.0.1 (free ports), for integration and e2e tests."""
