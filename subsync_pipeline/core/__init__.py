"""Pure domain logic of subsync: no Dagster import, so every rule can be tested and reused alone."""
