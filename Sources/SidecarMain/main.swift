import Sidecar
