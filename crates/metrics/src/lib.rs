//! diffinv-metrics
