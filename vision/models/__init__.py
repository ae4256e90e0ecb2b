"""darla subpackage."""
