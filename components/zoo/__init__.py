"""The model zoo: verified checkpoint bundles, the MLflow Model Registry as their store, and
transfer learning from them."""
from components.zoo.bundle import BundleError, bundle_info, load_bundle, read_weights, verify_bundle, write_bundle

__all__ = ["BundleError", "bundle_info", "load_bundle", "read_weights", "verify_bundle", "write_bundle"]
