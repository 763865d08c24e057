"""mesh.config"""
