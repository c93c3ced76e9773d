//! Connections to the two real services: ClickHouse (facts) and Redis (config entities).

pub mod click_lookup;
pub mod clickhouse;
pub mod cluster_schema;
pub mod redis;
