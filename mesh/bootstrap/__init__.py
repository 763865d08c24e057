"""mesh.bootstrap"""
