"""The studies' logic (which runs, which rules decide the claims), called by the chapter notebooks."""
