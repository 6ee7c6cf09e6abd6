"""free_ports: ports for a second local platform that cannot collide with each other."""

from __future__ import annotations

from mlops_platform.local.postgres import free_ports, port_is_free


def test_free_ports_are_distinct_free_and_skip_the_excluded() -> None:
    first = free_ports(20)
    ports = free_ports(40, exclude=frozenset(first))
    assert len(set(ports)) == 40
    assert not set(ports) & set(first)
    assert all(port_is_free(port) for port in ports)
