//! The conformance kit (`ferry-conformance`) on the smol adapter: every
//! scenario an adapter must pass, one test each.

ferry_conformance::adapter_tests!(ferry_smol);
