"""Tests of streamproc.kafka: TLS/SASL of every client, the data consumer's tuples, murmur2."""
