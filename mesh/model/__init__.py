"""mesh.model"""
