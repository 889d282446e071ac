"""The HTTP edge: routers translate HTTP to domain calls and back; `errors` maps every failure to
the error envelope once; `deps` declares the shared dependencies (clock, settings)."""
