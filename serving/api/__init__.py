"""The HTTP entrypoint: ``create_app`` wires settings, model, batcher and publisher into FastAPI."""
