from muscale.data.config import data_config
def build_data(cfg, *, rank=0, world_size=1, cache_dir=None):
    cfg = data_config(cfg)
    from muscale.data.synthetic import SyntheticSource
    return SyntheticSource(cfg, rank=rank, world_size=world_size)
