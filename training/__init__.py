"""Training s2mask U-Nets: data (CloudSEN12 taco, GeoTIFF pairs, synthetic shards), loop, metrics.

Entry points: ``python -m training`` (the click group :data:`training.cli.train_cli`),
:func:`training.loop.train`, :func:`training.evaluate.evaluate`,
:func:`training.compare.compare_bands`, :func:`training.synthetic.write_synthetic_dataset`.
Imports ``s2mask.model`` (one U-Net, one ``normalize``); ``s2mask`` never imports this package.
"""
