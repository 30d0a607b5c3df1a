# EuroSAT multispectral (Helber et al. 2019): the same 27,000 patches as 13-band uint16 GeoTIFFs (Sentinel-2
# L1C digital numbers), as unzipped from EuroSATallBands.zip under data/EuroSATallBands (the Zenodo copy
# unzips to EuroSAT_MS: change data_prefix). Band order in the files: B01-B08, B09, B10, B11, B12, B8A.
# Seeded, stratified 60/20/20 split. mmpretrain.
default_scope = 'mmpretrain'
dataset_type = 'visionattn.EuroSATDataset'
data_root = 'data/EuroSATallBands'
split_fractions = dict(train=0.6, val=0.2, test=0.2)
# Red, green, blue (B04, B03, B02) first, so that a pretrained RGB stem's filters meet the bands they were
# trained on (timm's in_chans adaptation repeats the R, G, B filters over the channels in order), then the rest.
bands = (3, 2, 1, 0, 4, 5, 6, 7, 8, 9, 10, 11, 12)
num_bands = len(bands)
# Per-band mean and std of EuroSAT-MS (TorchGeo's EuroSATDataModule, rounded), in the order of `bands`:
# B04, B03, B02, B01, B05, B06, B07, B08, B09, B10, B11, B12, B8A.
band_mean = [947.63, 1042.93, 1118.24, 1354.41, 1199.47, 1999.79, 2369.22, 2296.83, 732.08, 12.11, 1819.01, 1118.92, 2594.14]
band_std = [593.75, 395.09, 333.01, 245.72, 566.42, 861.18, 1086.63, 1117.98, 404.92, 4.78, 1002.59, 761.3, 1231.59]
# 16-bit values are kept as they are and normalised by the data preprocessor (band_mean / band_std).
train_pipeline = [
    dict(type='visionattn.LoadMultiBandImage', bands=bands, num_bands=num_bands),
    dict(type='visionattn.Albumentations', transforms=[dict(type='SquareSymmetry', p=1.0)], max_value=10000),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='visionattn.LoadMultiBandImage', bands=bands, num_bands=num_bands), dict(type='PackInputs')]
_data_prefix = 'ds/images/remote_sensing/otherDatasets/sentinel_2/tif'


def _split(split: str, pipeline: list) -> dict:
    return dict(type=dataset_type, data_root=data_root, data_prefix=_data_prefix, extensions=('.tif',), split=split,
                split_fractions=split_fractions, pipeline=pipeline)


train_dataloader = dict(batch_size=64, num_workers=4, persistent_workers=True,
                        sampler=dict(type='DefaultSampler', shuffle=True), dataset=_split('train', train_pipeline))
val_dataloader = dict(batch_size=128, num_workers=4, persistent_workers=True,
                      sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('val', test_pipeline))
test_dataloader = dict(batch_size=128, num_workers=4, persistent_workers=True,
                       sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('test', test_pipeline))
val_evaluator = [dict(type='Accuracy', topk=(1,)), dict(type='visionattn.ClsPerClassMetric')]
test_evaluator = val_evaluator
visualizer = dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
