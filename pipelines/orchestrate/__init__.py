"""What runs and where: the plan of a run or sweep (stages and what each needs) and the backends that
execute it (local worker processes; Ray)."""
