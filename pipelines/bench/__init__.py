"""`darla bench env | see | act`: speed targets, measured beside a reference in the same run."""
