"""Result sets: where they live, what a result file must hold, and how sets are stored, derived, moved and locked."""
