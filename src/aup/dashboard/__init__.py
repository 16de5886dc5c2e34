"""The web dashboard over the store: REST API, pages, plots and exports."""
