"""naive_student package."""
