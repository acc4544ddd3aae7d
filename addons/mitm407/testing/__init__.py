"""mitm407 for other projects' test suites: a real proxy per test, driven from Python (pytest plugin)."""
