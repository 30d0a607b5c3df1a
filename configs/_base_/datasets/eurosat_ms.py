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
# Per-band mean and std of EuroSAT-MS in file band order (TorchGeo's EuroSATDataModule), reordered like bands.
_file_mean = [1354.40546513, 1118.24399958, 1042.92983953, 947.62620298, 1199.47283961, 1999.79090914,
              2369.22292565, 2296.82608323, 732.08340178, 12.11327804, 1819.01027855, 1118.92391149, 2594.14080798]
_file_std = [245.71762908, 333.00778264, 395.09249139, 593.75055589, 566.4170017, 861.18399006, 1086.63139075,
             1117.98170791, 404.91978886, 4.77584468, 1002.58768311, 761.30323499, 1231.58581042]
band_mean = [_file_mean[b] for b in bands]
band_std = [_file_std[b] for b in bands]
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
