//! diffinv-solvers
