"""The conformance suite: one test function per property of the numerical contract."""
