"""The operator dashboard (`/ui`): server-rendered pages over the application services."""
