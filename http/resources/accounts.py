"""Routes of this area are added with their issue."""

ROUTES: list = []
