"""mesh.xds"""
