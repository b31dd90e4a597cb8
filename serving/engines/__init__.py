"""Inference engines behind one interface (:class:`serving.engines.base.Engine`)."""
